module github.com/nodexsec/nodex/services/keyvault

go 1.26.0
