package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
)

// A [Secret] marshals as "[REDACTED]" wherever it ends up, so the two
// request types that must carry one marshal it themselves. They also
// redact when printed or logged, since their JSON form holds the value.

type storeWire struct {
	Provider string            `json:"provider"`
	Name     string            `json:"name"`
	Value    string            `json:"value"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// MarshalJSON implements [json.Marshaler] and writes the value itself.
func (r StoreRequest) MarshalJSON() ([]byte, error) {
	return json.Marshal(storeWire{Provider: r.Provider, Name: r.Name,
		Value: string(r.Value.Reveal()), Labels: r.Labels})
}

// LogValue implements [slog.LogValuer] without the value.
func (r StoreRequest) LogValue() slog.Value {
	return slog.GroupValue(slog.String("provider", r.Provider), slog.String("name", r.Name))
}

// Format implements [fmt.Formatter] without the value.
func (r StoreRequest) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "{provider:%s name:%s value:%s}", r.Provider, r.Name, r.Value)
}

type rotateWire struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// MarshalJSON implements [json.Marshaler] and writes the value itself.
func (r RotateRequest) MarshalJSON() ([]byte, error) {
	return json.Marshal(rotateWire{Name: r.Name, Value: string(r.Value.Reveal())})
}

// LogValue implements [slog.LogValuer] without the value.
func (r RotateRequest) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", r.Name))
}

// Format implements [fmt.Formatter] without the value.
func (r RotateRequest) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "{name:%s value:%s}", r.Name, r.Value)
}
