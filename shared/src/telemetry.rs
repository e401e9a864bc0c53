//! JSON logs, one line per event, with phone numbers masked and no secrets.

use tracing_subscriber::EnvFilter;

/// Installs the JSON log subscriber and names the function its metrics come from (pass
/// `env!("CARGO_PKG_NAME")`). The level comes from `RUST_LOG`, else Lambda's
/// `AWS_LAMBDA_LOG_LEVEL`, else `info`.
pub fn init(function: &'static str) {
    crate::metrics::init(function);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            EnvFilter::try_new(
                std::env::var("AWS_LAMBDA_LOG_LEVEL")
                    .unwrap_or_else(|_| "info".into())
                    .to_lowercase(),
            )
        })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // `try_init` so a second call (tests, a binary that calls it twice) is harmless.
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}

/// Masks a phone number for logs: `+14155550234` becomes `+1415****234`. Client and SIP
/// identities are not phone numbers and pass through; anything else is masked whole.
pub fn mask_phone(number: &str) -> String {
    if number.starts_with("client:") || number.starts_with("sip:") || number.is_empty() {
        return number.to_owned();
    }
    let chars: Vec<char> = number.chars().collect();
    if chars.len() < 8 {
        return "****".to_owned();
    }
    let head: String = chars[..5].iter().collect();
    let tail: String = chars[chars.len() - 3..].iter().collect();
    format!("{head}****{tail}")
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
