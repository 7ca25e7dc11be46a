module github.com/nodexsec/nodex/services/nodex

go 1.26.0
