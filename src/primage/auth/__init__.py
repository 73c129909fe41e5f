"""Security: who is calling (tokens, later OIDC) and what they may do (policy)."""
