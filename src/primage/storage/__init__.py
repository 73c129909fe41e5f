"""Storage: spaces as folders on a POSIX root, safe paths, streamed atomic transfers."""
