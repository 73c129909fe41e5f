"""Jobs: specifications expanded into tasks, their states, and the reconciler that runs them."""
