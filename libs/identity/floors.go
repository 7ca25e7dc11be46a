package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
)

// loadFloors reads the versions a view accepted before a restart. A
// missing file (first start) yields no floors.
func loadFloors(path string) (map[string]uint64, error) {
	floors := map[string]uint64{}
	if path == "" {
		return floors, nil
	}
	data, err := readSecretFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return floors, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &floors); err != nil {
		return nil, fmt.Errorf("decoding registry state file %s: %w", path, err)
	}

	return floors, nil
}

// saveFloors writes the highest accepted version of every record except
// the heartbeat. Only the watch goroutine calls it.
func (v *View) saveFloors() error {
	v.mu.RLock()
	out := maps.Clone(v.floors)
	for k, ver := range v.versions {
		if k != KeyHeartbeat && ver > out[k] {
			out[k] = ver
		}
	}
	v.mu.RUnlock()

	data, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encoding registry state: %w", err)
	}
	if err := writeSecretFile(v.opts.StateFile, data); err != nil {
		return fmt.Errorf("saving registry state: %w", err)
	}

	return nil
}
