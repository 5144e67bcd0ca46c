"""The kukeonv1 wire layer: Go ``net/rpc`` + ``jsonrpc`` framing over a unix socket."""
