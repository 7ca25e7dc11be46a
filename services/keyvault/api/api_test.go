package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestRequestsCarryValueButRedact(t *testing.T) {
	const value = "gsk_FAKEVALUEFAKEVALUE"
	store := StoreRequest{Provider: "groq", Name: "g", Value: NewSecret([]byte(value))}
	rotate := RotateRequest{Name: "g", Value: NewSecret([]byte(value))}

	for name, req := range map[string]any{"store": store, "rotate": rotate} {
		data, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), value) {
			t.Errorf("%s JSON lacks the value: %s", name, data)
		}
		var logs bytes.Buffer
		slog.New(slog.NewJSONHandler(&logs, nil)).Info("m", "req", req)
		printed := fmt.Sprintf("%v %+v %s", req, req, req)
		if strings.Contains(logs.String()+printed, "FAKEVALUE") {
			t.Errorf("%s leaks when logged or printed: %s %s", name, logs.String(), printed)
		}
	}

	var back StoreRequest
	data, _ := json.Marshal(store)
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if string(back.Value.Reveal()) != value {
		t.Error("store request does not round-trip its value")
	}
	reply := RetrieveReply{Name: "g", Value: Plaintext(value)}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("m", "reply", reply)
	if strings.Contains(logs.String()+fmt.Sprintf("%v %+v", reply, reply.Value), "FAKEVALUE") {
		t.Errorf("retrieve reply leaks when logged or printed: %s", logs.String())
	}
}
