"""Applications: long-running services deployed from templates, reached through the platform."""
