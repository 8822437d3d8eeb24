package runtimes

import (
	"testing"

	"github.com/aod/aod/catalogue"
	"github.com/matryer/is"
)

// TestCatalogueEntriesHaveAdapters walks the runtime catalogue: every
// runtime it names must have an adapter here, and every runtime except the
// built-in shell an npm pin the installer accepts.
func TestCatalogueEntriesHaveAdapters(t *testing.T) {
	for _, entry := range catalogue.Runtimes() {
		t.Run(entry.Name, func(t *testing.T) {
			is := is.New(t)
			rt := For(entry.Name, Endpoints{})
			_, missing := rt.(Unavailable)
			is.True(!missing)                 // the catalogue's adapter name has an adapter
			is.Equal(rt.Name(), entry.Name)   // the adapter drives this runtime
			is.True(len(entry.Providers) > 0) // it serves some provider
			for p := range entry.Credentials {
				is.True(entry.Serves(p)) // credentials only for providers it serves
			}
			pkg := Pin(rt, nil)
			if entry.Name == "shell" {
				is.True(pkg == nil) // shell installs nothing
				return
			}
			is.True(pkg != nil)                         // an agent CLI has a pin
			is.True(versionRE.MatchString(pkg.Version)) // an exact npm version
			is.True(pkg.Bin != "")                      // and the command it installs
		})
	}
	_, missing := For("cobol", Endpoints{}).(Unavailable)
	is.New(t).True(missing) // a name outside the catalogue has no adapter
}
