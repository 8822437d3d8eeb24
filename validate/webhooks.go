package validate

import (
	"net/netip"
	"net/url"
	"strings"

	"github.com/aod/aod/runner/egress"
	"github.com/aod/aod/store"
)

// WebhookTarget checks a webhook URL that WebhookInput accepted against the
// sprites' egress rule, for the API and the web UI alike. A URL whose host
// is an address literal is refused now (a 422) when the address is
// loopback, link-local, private or otherwise special, unless one of the
// operator's --egress-allow rules names it. A host name passes: it is
// checked where it resolves, at each delivery.
func WebhookTarget(raw string, allow []egress.Rule) error {
	reason := ""
	u, err := url.Parse(raw)
	if err != nil {
		reason = "not a URL"
	} else if a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil {
		reason = egress.AddressRefusal(allow, u.Hostname(), a)
	}
	if reason != "" {
		return store.Errorf(store.Invalid, "Webhook url is not allowed: %s (--egress-allow can name it)", reason)
	}
	return nil
}
