package envelope

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// WrapBucket is the JetStream KV bucket that holds wrap records.
const WrapBucket = "NODEX_WRAPS"

// String returns the KV key "wrap.<sender>.<kid>.<recipient>.<version>":
// the sender token is [WrapSenderToken], kid is lowercase hex, the
// recipient token is [WrapRecipientToken] and the version is the
// recipient's key version or role epoch in decimal. KV keys allow only
// [-/_=.a-zA-Z0-9], and ids and roles may contain other bytes (a role such
// as "service:codesec" has a colon). The version is a token of its own so
// that a NATS permission "wrap.*.*.<recipient>.*" can let a party read the
// wraps addressed to it, of every version, and no others.
func (k WrapKey) String() string {
	return fmt.Sprintf("wrap.%s.%s.%s.%d", WrapSenderToken(k.Sender),
		hex.EncodeToString(k.KID[:]), WrapRecipientToken(k.Recipient.Type, k.Recipient.Name),
		k.Recipient.Version)
}

// LegacyString returns the key layout written before the version became a
// token of its own: "wrap.<sender>.<kid>.<recipient>=<version>".
//
// TODO: remove once no deployment holds wraps written before the change;
// wraps live at most their bucket's maximum age (bus.DefaultWrapMaxAge).
func (k WrapKey) LegacyString() string {
	return fmt.Sprintf("wrap.%s.%s.%s=%d", WrapSenderToken(k.Sender),
		hex.EncodeToString(k.KID[:]), WrapRecipientToken(k.Recipient.Type, k.Recipient.Name),
		k.Recipient.Version)
}

// WrapRecipientToken returns the KV key token of a recipient:
// "i=<name>" for an identity, "r=<name>" for a role, with the name in
// unpadded base64url.
func WrapRecipientToken(typ RecipientType, name string) string {
	t := "i"
	if typ == RecipientRole {
		t = "r"
	}

	return t + "=" + encodeToken(name)
}

// WrapSenderToken returns the KV key token of a sender id. NATS permissions
// that let only id write its own wraps allow publishing on
// "$KV.NODEX_WRAPS.wrap.<token>.>".
func WrapSenderToken(id string) string { return encodeToken(id) }

func encodeToken(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// ParseWrapKey parses a KV key written by [WrapKey.String] or
// [WrapKey.LegacyString].
func ParseWrapKey(s string) (WrapKey, error) {
	parts := strings.Split(s, ".")
	if len(parts) == 5 && parts[0] == "wrap" {
		parts = []string{parts[0], parts[1], parts[2], parts[3] + "=" + parts[4]}
	}
	if len(parts) != 4 || parts[0] != "wrap" {
		return WrapKey{}, fmt.Errorf("envelope: wrap key %q is not wrap.<sender>.<kid>.<recipient>", s)
	}
	sender, err1 := base64.RawURLEncoding.DecodeString(parts[1])
	kid, err2 := hex.DecodeString(parts[2])
	rp := strings.Split(parts[3], "=")
	if err1 != nil || err2 != nil || len(kid) != 32 || len(rp) != 3 {
		return WrapKey{}, fmt.Errorf("envelope: wrap key %q is malformed", s)
	}
	name, err1 := base64.RawURLEncoding.DecodeString(rp[1])
	version, err2 := strconv.ParseUint(rp[2], 10, 32)
	if err1 != nil || err2 != nil || (rp[0] != "i" && rp[0] != "r") {
		return WrapKey{}, fmt.Errorf("envelope: wrap key %q has a malformed recipient", s)
	}
	k := WrapKey{Sender: string(sender)}
	copy(k.KID[:], kid)
	k.Recipient = Recipient{Type: RecipientIdentity, Name: string(name), Version: uint32(version)}
	if rp[0] == "r" {
		k.Recipient.Type = RecipientRole
	}

	return k, nil
}
