package keyvault

import (
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/services/keyvault/internal/ports/busport"
)

func registerHandlers(c *bus.Client, svc *service, o busport.Options) error {
	return busport.Register(c, svc.app, o)
}
