//! What a call costs: USD per one million input and output tokens.
//!
//! Owns: the default price table for common OpenAI models and the cost formula. A
//! connection's own price (set through the admin API) wins over the table; a model the
//! table does not know has no cost (`None`), never a guessed one.

use crate::store::types::Price;
use crate::usage::Usage;

/// Default prices (USD per 1M tokens: input, output), matched by the longest prefix of the
/// upstream model name, so dated snapshots (`gpt-4o-mini-2024-07-18`) find their family.
const DEFAULT_PRICES: &[(&str, f64, f64)] = &[
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4-turbo", 10.00, 30.00),
    ("gpt-4", 30.00, 60.00),
    ("gpt-3.5-turbo", 0.50, 1.50),
    ("o1-mini", 1.10, 4.40),
    ("o1", 15.00, 60.00),
    ("o3-mini", 1.10, 4.40),
    ("o3", 2.00, 8.00),
    ("o4-mini", 1.10, 4.40),
    ("text-embedding-3-small", 0.02, 0.0),
    ("text-embedding-3-large", 0.13, 0.0),
    ("text-embedding-ada-002", 0.10, 0.0),
];

/// The default price of `model`, if the table knows its family.
pub fn default_price(model: &str) -> Option<Price> {
    DEFAULT_PRICES
        .iter()
        .filter(|(prefix, _, _)| model.starts_with(prefix))
        .max_by_key(|(prefix, _, _)| prefix.len())
        .map(|&(_, input, output)| Price {
            input_per_million: input,
            output_per_million: output,
        })
}

/// The cost of `usage` at `price`, in USD.
pub fn cost(price: Price, usage: Usage) -> f64 {
    (usage.prompt_tokens as f64 * price.input_per_million
        + usage.completion_tokens as f64 * price.output_per_million)
        / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_unknown_models_cost_nothing_known() {
        let mini = default_price("gpt-4o-mini-2024-07-18");
        assert_eq!(mini.map(|p| p.input_per_million), Some(0.15));
        assert_eq!(
            default_price("gpt-4o-2024-08-06").map(|p| p.output_per_million),
            Some(10.0)
        );
        assert!(default_price("llama-3-70b").is_none());
        let usage = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 500_000,
        };
        let c = cost(
            Price {
                input_per_million: 2.5,
                output_per_million: 10.0,
            },
            usage,
        );
        assert!((c - 7.5).abs() < 1e-9);
    }
}
