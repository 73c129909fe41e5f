"""WebDAV access to the spaces: the gateway at /dav and its WsgiDAV provider."""
