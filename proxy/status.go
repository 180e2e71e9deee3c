package proxy

// HTTP statuses the proxy itself sends or acts on, by net/http's names
// (net/http itself is not imported: the engine does not use it, and
// linking it would grow every worker for a few constants).
const (
	statusContinue           = 100
	statusSwitchingProtocols = 101
	statusOK                 = 200
	statusNoContent          = 204
	statusNotModified        = 304
	statusBadRequest         = 400
	statusNotFound           = 404
	statusMethodNotAllowed   = 405
	statusRequestTimeout     = 408
	statusContentTooLarge    = 413
	statusURITooLong         = 414
	statusTooManyRequests    = 429
	statusHeaderTooLarge     = 431 // Request Header Fields Too Large
	statusInternalError      = 500
	statusBadGateway         = 502
	statusUnavailable        = 503
	statusGatewayTimeout     = 504
	statusVersionUnsupported = 505
)
