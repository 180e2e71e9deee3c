package worker

import (
	"testing"

	"github.com/pingora-go/pingora/proxy/ratelimit"
	"github.com/pingora-go/pingora/proxy/upstream"
	"github.com/pingora-go/pingora/worker/wire"
)

// The master names the zone it hands over by wire's constant; the layout
// is ratelimit's. They must change together.
func TestZoneLayoutNamesAgree(t *testing.T) {
	if wire.RateLimitZoneLayout != ratelimit.ZoneLayout {
		t.Fatalf("wire.RateLimitZoneLayout %q != ratelimit.ZoneLayout %q", wire.RateLimitZoneLayout, ratelimit.ZoneLayout)
	}
	if wire.HealthZoneLayout != upstream.HealthTableLayout || wire.HealthZoneSize != upstream.HealthTableSize {
		t.Fatalf("wire's health zone %q of %d bytes != upstream's %q of %d", wire.HealthZoneLayout, wire.HealthZoneSize,
			upstream.HealthTableLayout, upstream.HealthTableSize)
	}
}
