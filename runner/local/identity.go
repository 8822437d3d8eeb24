package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// When aod runs as root, each bubblewrap sprite gets a range of uidRange
// host uids of its own (spec/runner.md §10: package managers need more than
// one uid inside), starting at uidBase + slot*uidRange. Its processes are
// uid 0 of their own user namespace, which maps to the range's first uid:
// unprivileged on the host, so /proc/sys, root-only files and the other
// sprites' trees (each owned by its own range) are out of their reach.
//
// The ranges lie in the block systemd leaves to containers (524288 to
// 1879048191, see systemd's UIDS-GIDS.md); a sprite's slot is recorded by
// who owns its home directory, so it survives restarts with no file of
// its own.
const (
	uidBase  = 0x20000000 // 536870912
	uidRange = 1 << 16
	maxSlots = (1879048191 - uidBase + 1) / uidRange
)

// ids hands out the sprites' uid ranges.
type ids struct {
	mu   sync.Mutex
	used map[int]string // slot -> sprite name
}

// slotOf is the slot a host uid belongs to, -1 for one outside every range.
func slotOf(uid int) int {
	if uid < uidBase || uid >= uidBase+maxSlots*uidRange || (uid-uidBase)%uidRange != 0 {
		return -1
	}
	return (uid - uidBase) / uidRange
}

// load records the slots of the sprites already under root.
func (m *ids) load(root string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.used = map[int]string{}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		var st syscall.Stat_t
		if e.IsDir() && syscall.Lstat(filepath.Join(root, e.Name(), "home"), &st) == nil {
			if slot := slotOf(int(st.Uid)); slot >= 0 {
				m.used[slot] = e.Name()
			}
		}
	}
}

// owner is the first host uid of the sprite whose home is home, taking a
// free range when it has none yet (a new sprite, or one made before
// sprites had ranges).
func (m *ids) owner(name, home string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var st syscall.Stat_t
	if err := syscall.Lstat(home, &st); err == nil {
		if slot := slotOf(int(st.Uid)); slot >= 0 {
			m.used[slot] = name
			return int(st.Uid), nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	for slot := 0; slot < maxSlots; slot++ {
		if _, taken := m.used[slot]; !taken {
			m.used[slot] = name
			return uidBase + slot*uidRange, nil
		}
	}
	return 0, fmt.Errorf("every one of the %d sprite uid ranges is in use: delete old sessions", maxSlots)
}

// release frees a deleted sprite's range.
func (m *ids) release(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for slot, n := range m.used {
		if n == name {
			delete(m.used, slot)
		}
	}
}
