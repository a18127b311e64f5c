{
  "format": "medrl-sig/1",
  "algorithm": "ed25519",
  "key_id": "403b367b77478977",
  "signer": "medrl demo key (DEMO ONLY: published private key, never trust it in production)",
  "ruleset": "medical-safety@1.0.0",
  "ruleset_sha256": "51ef25ec41dd8744350985ec7303a78a0ee72aad8b43bf7b9f45aa000c6c3b5f",
  "signed_at": "2026-12-01T10:00:00Z",
  "signature": "53bcda3e5b3029b32ce928094d4f5b4667e00be9891de22fac57b2cc73949dff01784d85dec084ba893380884f53de7399cc1380540b345014fa197a5592a000"
}
