package proxy

// SyncBuffer lets the black-box tests (package proxy_test) share the
// white-box harness's goroutine-safe buffer.
type SyncBuffer = syncBuffer
