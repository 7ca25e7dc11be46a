package domain

import (
	"encoding/json"
	"errors"
)

var errSecretNotString = errors.New("keyvault: key value must be a JSON string")

func jsonUnmarshalString(b []byte, v *string) error { return json.Unmarshal(b, v) }
