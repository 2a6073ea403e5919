package apps

import (
	"context"
	"fmt"
	"math"
	"time"
)

// props are a unit's D-Bus properties, as go-systemd returns them.
type props map[string]any

func (p props) str(k string) string {
	s, _ := p[k].(string)
	return s
}

func (p props) boolean(k string) bool {
	b, _ := p[k].(bool)
	return b
}

func (p props) strs(k string) []string {
	s, _ := p[k].([]string)
	return s
}

// u64 returns an unsigned property, or false when it is unset: systemd
// says "unset" with the maximum value (MemoryCurrent without memory
// accounting, for one).
func (p props) u64(k string) (uint64, bool) {
	switch v := p[k].(type) {
	case uint64:
		return v, v != math.MaxUint64
	case uint32:
		return uint64(v), v != math.MaxUint32
	}
	return 0, false
}

// time returns a timestamp property, microseconds since the epoch, or
// the zero time when it is 0 (never).
func (p props) time(k string) time.Time {
	us, ok := p.u64(k)
	if !ok || us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(int64(us))
}

// listens returns a socket unit's Listen property, a(ss) of type and
// address, as the addresses.
func (p props) listens() []string {
	var out []string
	switch v := p["Listen"].(type) {
	case [][]any:
		for _, pair := range v {
			if len(pair) == 2 {
				if s, ok := pair[1].(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// execStart returns the argv of a service's first ExecStart= command,
// a(sasbttttuii), or nil.
func (p props) execStart() []string {
	cmds, ok := p["ExecStart"].([][]any)
	if !ok || len(cmds) == 0 || len(cmds[0]) < 2 {
		return nil
	}
	argv, _ := cmds[0][1].([]string)
	return argv
}

// unitProps returns the properties of unit's org.freedesktop.systemd1.Unit
// interface; systemd loads the unit to answer, so an unknown unit has
// LoadState "not-found".
func (m *Manager) unitProps(ctx context.Context, unit string) (props, error) {
	p, err := m.conn.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return nil, fmt.Errorf("properties of %s: %w", unit, err)
	}
	return p, nil
}

// typeProps returns the properties of unit's type interface: typ is
// "Service" or "Socket".
func (m *Manager) typeProps(ctx context.Context, unit, typ string) (props, error) {
	p, err := m.conn.GetUnitTypePropertiesContext(ctx, unit, typ)
	if err != nil {
		return nil, fmt.Errorf("%s properties of %s: %w", typ, unit, err)
	}
	return p, nil
}
