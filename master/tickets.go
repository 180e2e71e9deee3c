package master

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/pingora-go/pingora/worker/wire"
)

// TLS session-ticket keys. Every worker encrypts the tickets it issues with
// the same key, from the master, and accepts tickets under that key and the
// two before it: a client resumes its session whichever worker it reaches
// next, and after a reload (the keys stay with the master, so a new
// generation starts with them). The master makes a new key every
// ticketKeyRotation and sends the set to every worker; a ticket therefore
// stays good for two to three rotations. Keys live in the master's and
// workers' memory only. A binary upgrade starts with fresh keys: sessions
// of before it do a full handshake once.

const (
	ticketKeyRotation = time.Hour
	ticketKeysKept    = 3 // the current key and the two before it
)

// newTicketKey draws a session-ticket key.
func newTicketKey() ([32]byte, error) {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("session ticket key: %w", err)
	}
	return k, nil
}

// rotateTicketKeys puts a new key first and keeps the previous ones up to
// ticketKeysKept.
func rotateTicketKeys(keys [][32]byte) ([][32]byte, error) {
	k, err := newTicketKey()
	if err != nil {
		return keys, err
	}
	next := append([][32]byte{k}, keys...)
	if len(next) > ticketKeysKept {
		next = next[:ticketKeysKept]
	}
	return next, nil
}

// scheduleTicketRotation makes the loop rotate the keys every
// ticketKeyRotation, from the master's start.
func (m *Master) scheduleTicketRotation() {
	time.AfterFunc(ticketKeyRotation, func() {
		m.events <- m.rotateTickets
	})
}

// rotateTickets makes a new key and sends the set to every live worker
// (one that misses it keeps the older set, whose keys still decrypt).
func (m *Master) rotateTickets() {
	if m.stopping {
		return
	}
	defer m.scheduleTicketRotation()
	keys, err := rotateTicketKeys(m.ticketKeys)
	if err != nil {
		m.log.Error("cannot rotate TLS session ticket keys; keeping the current ones", "error", err)
		return
	}
	m.ticketKeys = keys
	for _, g := range m.gens {
		for _, w := range g.workers() {
			if !w.alive() {
				continue
			}
			if err := w.ctl.SendTimeout(wire.Message{Type: wire.TypeTicketKeys, TicketKeys: keys}, heartbeatSendTimeout); err != nil {
				m.log.Warn("cannot send new session ticket keys to a worker", "pid", w.pid, "error", err)
			}
		}
	}
	m.log.Debug("TLS session ticket keys rotated")
}
