package identity_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/identity"
)

func TestStaleAfterFromEnv(t *testing.T) {
	t.Parallel()

	tests := []struct {
		value   string
		want    time.Duration
		wantErr bool
	}{
		{value: "", want: identity.DefaultStaleAfter},
		{value: "20s", want: 20 * time.Second},
		{value: "4s", want: identity.MinStaleAfter},
		{value: "2m", want: identity.MaxStaleAfter},
		{value: "20", wantErr: true},
		{value: "3s", wantErr: true},
		{value: "-20s", wantErr: true},
		{value: "1h", wantErr: true},
	}
	for _, tt := range tests {
		got, err := identity.StaleAfterFromEnv(func(name string) string {
			if name != identity.StaleAfterEnv {
				t.Errorf("read %s, want only %s", name, identity.StaleAfterEnv)
			}
			return tt.value
		})
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), identity.StaleAfterEnv) ||
				!strings.Contains(err.Error(), tt.value) {
				t.Errorf("%q: got %s, %v; want an error naming %s and the value", tt.value,
					got, err, identity.StaleAfterEnv)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: got %s, %v; want %s", tt.value, got, err, tt.want)
		}
	}
}

// The variable reaches every view whose options leave StaleAfter zero, and
// an invalid value stops the watch instead of falling back to a default.
func TestWatchReadsStaleAfterEnv(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Setenv(identity.StaleAfterEnv, "ten seconds")
	if v, err := identity.Watch(ctx, f.kv, f.setup.Root.Public(),
		identity.ViewOptions{}); err == nil {
		v.Close()
		t.Fatal("Watch with an invalid stale bound succeeded")
	}

	t.Setenv(identity.StaleAfterEnv, "4s")
	var offset atomic.Int64
	start := time.Now()
	clock := func() time.Time { return start.Add(time.Duration(offset.Load())) }
	v := f.watch(t, identity.ViewOptions{Now: clock})
	if _, err := v.Identity("codesec"); err != nil {
		t.Fatalf("fresh view: %v", err)
	}
	offset.Store(int64(identity.DefaultStaleAfter - time.Second))
	if _, err := v.Identity("codesec"); err == nil {
		t.Errorf("view older than the 4s bound is still fresh")
	}
}
