package keyvault_test

import (
	"context"
	"strings"
	"testing"

	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/keyvault"
)

func TestBackupRoundTripKeepsValuesWrapped(t *testing.T) {
	ctx := context.Background()
	src := newWorld(t, testkit.NATSServer(t))
	src.start(t, keyvault.Config{})
	values := map[string]api.Secret{"a-openai": fake(t, "openai"), "b-openai": fake(t, "openai")}
	for name, v := range values {
		var reply api.StoreReply
		err := src.operator.Request(ctx, api.SubjectStore, api.Role,
			api.StoreRequest{Provider: "openai", Name: name, Value: v}, &reply)
		if err != nil {
			t.Fatal(err)
		}
	}
	rotated := fake(t, "openai")
	var reply api.StoreReply
	if err := src.operator.Request(ctx, api.SubjectRotate, api.Role,
		api.RotateRequest{Name: "a-openai", Value: rotated}, &reply); err != nil {
		t.Fatal(err)
	}

	backup, err := keyvault.TakeBackup(ctx, testkit.JetStream(t, src.srv))
	if err != nil {
		t.Fatalf("TakeBackup: %v", err)
	}
	data, err := keyvault.MarshalBackup(backup)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]api.Secret{"a v1": values["a-openai"],
		"b v1": values["b-openai"], "a v2": rotated} {
		body := string(v.Reveal())[len("sk-proj-"):][:30]
		if strings.Contains(string(data), body) {
			t.Errorf("backup contains value %s in the clear", name)
		}
	}

	// Restore into a new server; the new service uses the same keyring.
	dst := newWorld(t, testkit.NATSServer(t))
	dst.kekFile = src.kekFile
	if err := keyvault.RestoreBackup(ctx, testkit.JetStream(t, dst.srv), backup); err != nil {
		t.Fatalf("RestoreBackup: %v", err)
	}
	dst.start(t, keyvault.Config{})
	want := map[string]map[int]api.Secret{
		"a-openai": {1: values["a-openai"], 2: rotated},
		"b-openai": {1: values["b-openai"]},
	}
	for name, versions := range want {
		for n, v := range versions {
			var got api.RetrieveReply
			err := dst.agent.Request(ctx, api.SubjectRetrieve, api.Role,
				api.RetrieveRequest{Name: name, Version: n}, &got)
			if err != nil {
				t.Errorf("%s version %d after restore: %v", name, n, err)
				continue
			}
			if string(got.Value) != string(v.Reveal()) {
				t.Errorf("%s version %d after restore: value differs", name, n)
			}
		}
	}
	var list api.ListReply
	if err := dst.operator.Request(ctx, api.SubjectList, api.Role, api.ListRequest{},
		&list); err != nil {
		t.Fatal(err)
	}
	if len(list.Keys) != 2 {
		t.Errorf("restored list has %d keys, want 2", len(list.Keys))
	}
}
