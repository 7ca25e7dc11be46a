package sandbox

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/adapters/receiptkv"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/receipt"
)

// Receipt is a signed execution receipt's body.
type Receipt = receipt.Receipt

// ReceiptBucket is the KV bucket that stores receipts by run id.
const ReceiptBucket = receiptkv.Bucket

func verifyReceipt(data []byte, pub ed25519.PublicKey) (*Receipt, error) {
	var s receipt.Signed
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decoding signed receipt: %w", err)
	}
	return receipt.Verify(&s, pub)
}
