module github.com/nodexsec/nodex/services/codesec

go 1.26.0
