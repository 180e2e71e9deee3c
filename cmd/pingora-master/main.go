// Command pingora-master is a reverse-proxy daemon: a root master that binds
// the listening ports and supervises unprivileged worker processes running
// the proxy. See README.md.
package main

func main() {}
