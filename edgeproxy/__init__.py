"""edgeproxy: an HTTP/1.1 + HTTP/2 caching proxy on trio (issue 4; not built yet)."""
