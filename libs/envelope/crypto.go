package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Domain-separation labels. Each derivation and signature has its own, so
// no output of one can be presented as an input of another.
const (
	labelKeyCommit = "nodex/v1/kc"
	labelSignature = "nodex/v1/envelope\x00"
	labelMessage   = "nodex/v1/msg"
	labelReply     = "nodex/v1/reply"
	labelWrap      = "nodex/v1/wrap\x00"
)

// Frame layout: u16 header length | header | Ed25519 signature | ciphertext.
const (
	signatureSize = ed25519.SignatureSize
	gcmTagSize    = 16
	minFrameSize  = 2 + headerFixedBytes + signatureSize + gcmTagSize
)

// ContentKey is a 32-byte AES-256 content key K of one epoch.
type ContentKey [32]byte

// KID returns the key commitment SHA-256("nodex/v1/kc" || K). Checking it
// after unwrapping defeats a ciphertext crafted to open under two keys,
// which AES-GCM alone allows because GHASH is linear in its key.
func (k *ContentKey) KID() [32]byte {
	h := sha256.New()
	h.Write([]byte(labelKeyCommit))
	h.Write(k[:])

	var kid [32]byte
	h.Sum(kid[:0])

	return kid
}

// replyKey derives the content key of the reply to the request whose
// content key is k and id is requestID. Responder and requester both hold
// k, so replies need no public-key work.
func (k *ContentKey) replyKey(requestID [16]byte) ContentKey {
	out, err := hkdf.Key(sha256.New, k[:], requestID[:], labelReply, 32)
	if err != nil {
		// HKDF fails only for outputs over 255 hash lengths; this one is 32 bytes.
		panic(fmt.Sprintf("envelope: deriving reply key: %v", err))
	}

	return ContentKey(out)
}

// messageAEAD derives the per-message AES-256-GCM key and 12-byte nonce from
// K and the message id with HKDF-SHA256. Ids are random, so no counter state
// is shared between sender replicas and a key-nonce pair repeats only when
// an id does.
func messageAEAD(k *ContentKey, id [16]byte) (cipher.AEAD, []byte) {
	okm, err := hkdf.Key(sha256.New, k[:], id[:], labelMessage, 32+12)
	if err != nil {
		panic(fmt.Sprintf("envelope: deriving message key: %v", err))
	}
	block, err := aes.NewCipher(okm[:32])
	if err != nil {
		panic(fmt.Sprintf("envelope: creating AES cipher: %v", err))
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(fmt.Sprintf("envelope: creating GCM: %v", err))
	}

	return aead, okm[32:]
}

// signingInput returns "nodex/v1/envelope\x00" || subject || header ||
// SHA-256(ciphertext), the exact bytes the Ed25519 signature covers.
func signingInput(subject string, header, ciphertext []byte) []byte {
	sum := sha256.Sum256(ciphertext)
	in := make([]byte, 0, len(labelSignature)+len(subject)+len(header)+len(sum))
	in = append(in, labelSignature...)
	in = append(in, subject...)
	in = append(in, header...)

	return append(in, sum[:]...)
}

// frameParts splits a frame into header bytes, signature and ciphertext.
func frameParts(frame []byte) (header, sig, ciphertext []byte, err error) {
	if len(frame) < minFrameSize {
		return nil, nil, nil, fmt.Errorf("%w: %d bytes is shorter than any envelope",
			ErrMalformed, len(frame))
	}
	n := int(binary.BigEndian.Uint16(frame))
	if n < headerFixedBytes || len(frame) < 2+n+signatureSize+gcmTagSize {
		return nil, nil, nil, fmt.Errorf("%w: header length %d is too short or exceeds the frame",
			ErrMalformed, n)
	}
	header = frame[2 : 2+n]
	sig = frame[2+n : 2+n+signatureSize]
	ciphertext = frame[2+n+signatureSize:]

	return header, sig, ciphertext, nil
}

// Suite identifiers of the fixed version-1 wrap suite, bound into the wrap info.
var (
	wrapKEM  = hpke.MLKEM768X25519()
	wrapKDF  = hpke.HKDFSHA256()
	wrapAEAD = hpke.AES256GCM()
)

// wrapInfo returns the HPKE info of a wrap: the suite, kid, sender, sender
// key version and recipient with its key version or epoch. A wrap sealed for
// any other combination fails to open, so a wrap record moved to another
// key, sender or recipient is detected by HPKE itself.
func wrapInfo(kid [32]byte, sender string, senderKeyVersion uint32, r Recipient) []byte {
	b := make([]byte, 0, 128)
	b = append(b, labelWrap...)
	b = binary.BigEndian.AppendUint16(b, wrapKEM.ID())
	b = binary.BigEndian.AppendUint16(b, wrapKDF.ID())
	b = binary.BigEndian.AppendUint16(b, wrapAEAD.ID())
	b = append(b, kid[:]...)
	b = appendString8(b, sender)
	b = binary.BigEndian.AppendUint32(b, senderKeyVersion)
	b = append(b, byte(r.Type))
	b = appendString8(b, r.Name)

	return binary.BigEndian.AppendUint32(b, r.Version)
}

// wrapKey seals K to pub with HPKE base mode under the bound info.
func wrapKey(pub hpke.PublicKey, k *ContentKey, info []byte) ([]byte, error) {
	if pub == nil || pub.KEM().ID() != wrapKEM.ID() {
		return nil, fmt.Errorf("wrapping content key: recipient key is not MLKEM768-X25519")
	}
	wrap, err := hpke.Seal(pub, wrapKDF, wrapAEAD, info, k[:])
	if err != nil {
		return nil, fmt.Errorf("wrapping content key: %w", err)
	}

	return wrap, nil
}

// unwrapKey opens a wrap and checks the key commitment against kid.
func unwrapKey(priv hpke.PrivateKey, wrap, info []byte, kid [32]byte) (ContentKey, error) {
	var k ContentKey
	if priv == nil || priv.KEM().ID() != wrapKEM.ID() {
		return k, fmt.Errorf("%w: local key is not MLKEM768-X25519", ErrWrapInvalid)
	}
	plain, err := hpke.Open(priv, wrapKDF, wrapAEAD, info, wrap)
	if err != nil || len(plain) != len(k) {
		// The HPKE error is not wrapped because ErrWrapInvalid already
		// names the reason and its detail helps no caller.
		return k, ErrWrapInvalid
	}
	copy(k[:], plain)
	if k.KID() != kid {
		return ContentKey{}, ErrKeyCommitment
	}

	return k, nil
}
