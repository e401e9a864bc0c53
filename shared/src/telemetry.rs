//! JSON logs, one line per event, with phone numbers masked and no secrets.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// Installs the JSON log subscriber and names the function its metrics come from (pass
/// `env!("CARGO_PKG_NAME")`). The level comes from `RUST_LOG` (`info`, or per target:
/// `warn,shared=debug`), else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info`. `Targets`, not
/// `EnvFilter`: the same directives without a regex engine in every bootstrap (binary size, docs/PERFORMANCE.md).
pub fn init(function: &'static str) {
    crate::metrics::init(function);
    let filter = ["RUST_LOG", "AWS_LAMBDA_LOG_LEVEL"]
        .into_iter()
        .filter_map(|name| std::env::var(name).ok())
        .find_map(|value| value.to_lowercase().parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false);
    // `try_init` so a second call (tests, a binary that calls it twice) is harmless.
    let _ = tracing_subscriber::registry()
        .with(json.with_filter(filter))
        .try_init();
}

/// Masks a phone number for logs: `+14155550234` becomes `+1415****234`. Client and SIP
/// identities are not phone numbers and pass through; anything else is masked whole.
pub fn mask_phone(number: &str) -> String {
    if number.starts_with("client:") || number.starts_with("sip:") || number.is_empty() {
        return number.to_owned();
    }
    // Byte offsets of the 5th character and of the 3rd from the end (one pass, no copy:
    // every accepted webhook logs its caller's number).
    let count = number.chars().count();
    if count < 8 {
        return "****".to_owned();
    }
    let offset = |n: usize| {
        number
            .char_indices()
            .nth(n)
            .map_or(number.len(), |(i, _)| i)
    };
    let (head, tail) = (&number[..offset(5)], &number[offset(count - 3)..]);
    let mut masked = String::with_capacity(head.len() + 4 + tail.len());
    masked.push_str(head);
    masked.push_str("****");
    masked.push_str(tail);
    masked
}

#[cfg(test)]
mod tests {
    use super::mask_phone;

    #[test]
    fn masks_the_middle_of_numbers() {
        assert_eq!(mask_phone("+14155550234"), "+1415****234");
        assert_eq!(mask_phone("+442071838750"), "+4420****750");
        assert_eq!(mask_phone("12345"), "****");
        assert_eq!(mask_phone("client:alice"), "client:alice");
        assert_eq!(mask_phone(""), "");
    }
}
