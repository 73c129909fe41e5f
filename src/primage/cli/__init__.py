"""The ``primage`` command: a thin layer over ``primage.Client``, one module per noun."""
