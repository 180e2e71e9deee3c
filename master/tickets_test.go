package master

import "testing"

// Each rotation puts a fresh key first and keeps the two before it, so a
// ticket stays good for two more rotations.
func TestTicketKeysRotate(t *testing.T) {
	var keys [][32]byte
	var made [][32]byte
	for i := 0; i < 5; i++ {
		var err error
		if keys, err = rotateTicketKeys(keys); err != nil {
			t.Fatal(err)
		}
		made = append(made, keys[0])
		want := min(i+1, ticketKeysKept)
		if len(keys) != want {
			t.Fatalf("after %d rotations: %d keys, want %d", i+1, len(keys), want)
		}
		for j := range keys {
			if keys[j] != made[len(made)-1-j] {
				t.Fatalf("after %d rotations: key %d is not the one made %d rotations ago", i+1, j, j)
			}
		}
	}
	if made[3] == made[4] || made[4] == [32]byte{} {
		t.Error("rotation did not draw a new key")
	}
}
