module github.com/nodexsec/nodex/services/policy

go 1.26.0
