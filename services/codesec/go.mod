module github.com/nodexsec/nodex/services/codesec

go 1.26.0

require github.com/google/uuid v1.6.0 // indirect
