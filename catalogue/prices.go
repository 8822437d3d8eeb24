package catalogue

// Price is a model's list price in US dollars per million tokens.
// CachedInput is what input read from the provider's prompt cache costs,
// CacheWrite what writing it costs (0: not charged apart).
type Price struct {
	Input, CachedInput, CacheWrite, Output float64
}

// PriceTableVersion dates the price table: the providers' published list
// prices on that day (standard tier, prompts under any long-context
// threshold). aod prices a turn from it only when the CLI reports no cost
// of its own, and says so (cost_source "price_table").
const PriceTableVersion = "2025-10-01"

var prices = map[string]Price{
	"anthropic/claude-opus-4-6":   {Input: 5, CachedInput: 0.5, CacheWrite: 6.25, Output: 25},
	"anthropic/claude-sonnet-4-6": {Input: 3, CachedInput: 0.3, CacheWrite: 3.75, Output: 15},
	"anthropic/claude-haiku-4-5":  {Input: 1, CachedInput: 0.1, CacheWrite: 1.25, Output: 5},
	"openai/gpt-5":                {Input: 1.25, CachedInput: 0.125, Output: 10},
	"openai/gpt-5-codex":          {Input: 1.25, CachedInput: 0.125, Output: 10},
	"openai/gpt-5-mini":           {Input: 0.25, CachedInput: 0.025, Output: 2},
	"openai/gpt-4.1":              {Input: 2, CachedInput: 0.5, Output: 8},
	"openai/o4-mini":              {Input: 1.1, CachedInput: 0.275, Output: 4.4},
	"google/gemini-2.5-pro":       {Input: 1.25, CachedInput: 0.31, Output: 10},
	"google/gemini-2.5-flash":     {Input: 0.3, CachedInput: 0.075, Output: 2.5},
}

// PriceOf is model's (canonical provider/model) list price, false when the
// table has none.
func PriceOf(model string) (Price, bool) {
	p, ok := prices[model]
	return p, ok
}
