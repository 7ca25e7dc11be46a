package envelope_test

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"fmt"

	"github.com/nodexsec/nodex/libs/envelope"
)

// Example seals a request from an agent to the codesec role and opens it
// as a codesec replica would.
func Example() {
	ctx := context.Background()
	dir := envelope.NewStaticDirectory()
	wraps := envelope.NewMemoryWraps()

	_, agentSigning, _ := ed25519.GenerateKey(nil)
	dir.SetParty(envelope.Party{ID: "agent-1", Kind: "agent", Status: envelope.StatusActive})
	dir.SetSigningKey("agent-1", envelope.SigningKey{Version: 1,
		Public: agentSigning.Public().(ed25519.PublicKey)})
	agent, _ := envelope.New(envelope.Config{Directory: dir, Wraps: wraps,
		Keys: envelope.NewStaticKeys("agent-1", 1, agentSigning)})

	roleKey, _ := hpke.MLKEM768X25519().GenerateKey()
	dir.SetRoleEpoch(envelope.RoleEpoch{Role: "service:codesec", Epoch: 1,
		Public: roleKey.PublicKey()})
	_, svcSigning, _ := ed25519.GenerateKey(nil)
	svcKeys := envelope.NewStaticKeys("codesec-1", 1, svcSigning)
	svcKeys.AddRoleKey("service:codesec", 1, roleKey)
	codesec, _ := envelope.New(envelope.Config{Directory: dir, Wraps: wraps, Keys: svcKeys})

	sealed, err := agent.Seal(ctx, envelope.Message{
		Kind: envelope.KindRequest, Subject: "nodex.v1.codesec.submit",
		To:          []envelope.Target{envelope.ToRole("service:codesec")},
		ContentType: envelope.ContentTypeJSON, ReplySubject: "_INBOX.agent-1.1",
		Body: []byte(`{"language":"python"}`),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	opened, err := codesec.Open(ctx, envelope.Delivery{Subject: "nodex.v1.codesec.submit",
		Reply: "_INBOX.agent-1.1"}, sealed.Frame)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(opened.Sender.ID, string(opened.Body))
	// Output: agent-1 {"language":"python"}
}
