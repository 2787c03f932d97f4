package node

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/meridiandb/meridian/kv"
)

// Node-local records live in kv meta of group 0 (no Paxos group uses 0).
var (
	metaNodeID    = []byte("node/id")
	metaPlacement = []byte("node/placement")
)

// LoadOrCreateID returns the node's persistent ID, drawing and saving a
// random one on first start.
func LoadOrCreateID(eng *kv.Engine) (NodeID, error) {
	b, err := eng.Meta(0, metaNodeID)
	if err == nil {
		if len(b) != 8 {
			return 0, fmt.Errorf("node: corrupt node ID record")
		}
		return NodeID(binary.BigEndian.Uint64(b)), nil
	}
	if !errors.Is(err, kv.ErrNotFound) {
		return 0, err
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return 0, err
	}
	id := NodeID(binary.BigEndian.Uint64(r[:]) >> 1) // positive when printed as int64
	if id == 0 {
		id = 1
	}
	batch := eng.NewBatch()
	if err := batch.SetMeta(0, metaNodeID, binary.BigEndian.AppendUint64(nil, uint64(id))); err != nil {
		batch.Close()
		return 0, err
	}
	return id, batch.Commit(true)
}

// SavePlacement persists the placement (synced).
func SavePlacement(eng *kv.Engine, p Placement) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	batch := eng.NewBatch()
	if err := batch.SetMeta(0, metaPlacement, b); err != nil {
		batch.Close()
		return err
	}
	return batch.Commit(true)
}

// LoadPlacement returns the persisted placement (ok false before init).
func LoadPlacement(eng *kv.Engine) (Placement, bool, error) {
	b, err := eng.Meta(0, metaPlacement)
	if errors.Is(err, kv.ErrNotFound) {
		return Placement{}, false, nil
	}
	if err != nil {
		return Placement{}, false, err
	}
	var p Placement
	if err := json.Unmarshal(b, &p); err != nil {
		return Placement{}, false, fmt.Errorf("node: corrupt placement record: %w", err)
	}
	return p, true, nil
}
