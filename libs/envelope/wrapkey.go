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

// String returns the KV key "wrap.<sender>.<kid>.<recipient>": the sender
// token is [WrapSenderToken], kid is lowercase hex and the recipient token
// is "i=<name>=<version>" or "r=<name>=<epoch>" with the name in unpadded
// base64url. KV keys allow only [-/_=.a-zA-Z0-9], and ids and roles may
// contain other bytes (a role such as "service:codesec" has a colon).
func (k WrapKey) String() string {
	t := "i"
	if k.Recipient.Type == RecipientRole {
		t = "r"
	}

	return fmt.Sprintf("wrap.%s.%s.%s=%s=%d", WrapSenderToken(k.Sender),
		hex.EncodeToString(k.KID[:]), t, encodeToken(k.Recipient.Name),
		k.Recipient.Version)
}

// WrapSenderToken returns the KV key token of a sender id. NATS permissions
// that let only id write its own wraps allow publishing on
// "$KV.NODEX_WRAPS.wrap.<token>.>".
func WrapSenderToken(id string) string { return encodeToken(id) }

func encodeToken(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// ParseWrapKey parses a KV key written by [WrapKey.String].
func ParseWrapKey(s string) (WrapKey, error) {
	parts := strings.Split(s, ".")
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
