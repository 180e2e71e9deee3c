package proxy

// SyncBuffer and RawBackend let the black-box tests (package proxy_test)
// share the white-box harness's goroutine-safe buffer and raw-socket
// backend.
type SyncBuffer = syncBuffer

var RawBackend = rawBackend
