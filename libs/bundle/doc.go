// Package bundle defines NodeX's sealed-code format: the only form in which
// agent code reaches a sandbox.
//
// A bundle has four parts:
//
//   - a manifest: JSON, kept as the exact bytes that were signed. It names the
//     bundle id, the SHA-256 of the code archive and of stdin, language,
//     entrypoint, modules, arguments and limits. It also records the author,
//     creation and expiry times, static-analysis findings and the policy
//     decision id;
//   - the code archive and stdin, encrypted with AES-256-GCM under a fresh
//     random 32-byte key per bundle;
//   - that key, sealed with HPKE (base mode, MLKEM768-X25519, HKDF-SHA256,
//     AES-256-GCM) to the sandbox-runner's encryption public key;
//   - an Ed25519 signature by codesec over the manifest, the sealed key and the
//     SHA-256 of the ciphertext, so that changing any byte breaks it.
//
// codesec calls [Seal]. The sandbox-runner calls [Parse], then [Verify] (signer,
// expiry, revocation), then [Open] (decryption and digest checks). [Open] accepts
// only the [Verified] value that [Verify] returns, so code cannot be decrypted
// without its signature having been checked first.
//
// [Store] keeps bundles in the JetStream Object Store NODEX_BUNDLES, and
// [Revocations] keeps the revocation list in the KV bucket NODEX_REVOKED.
// [RevocationWatcher] mirrors that bucket in memory for the runner.
package bundle
