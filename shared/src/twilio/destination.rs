//! Where a browser softphone may call out to: the toll-fraud guard.
//!
//! A prefix list cannot say it: `+1` is the US and Canada, but also twenty Caribbean
//! countries billed at international rates (+1 876 Jamaica, +1 809 the Dominican Republic)
//! and the US's own 900 premium numbers. So each number is classified by libphonenumber's
//! metadata (the `phonenumber` crate): its country, and its type. A number is called only when
//! it is valid, its country is allowed, and its type is one that costs an ordinary rate:
//! premium-rate, shared-cost, personal, UAN and pager numbers are refused unless a flow
//! names them.

use serde::Deserialize;

/// A number's type, as libphonenumber classifies it, in the names `flows.toml` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberType {
    FixedLine,
    Mobile,
    /// The NANP cannot tell the two apart from the number.
    FixedLineOrMobile,
    TollFree,
    PremiumRate,
    SharedCost,
    PersonalNumber,
    Voip,
    Pager,
    Uan,
    Voicemail,
    /// Anything else (emergency, short codes, numbers the metadata does not place).
    Other,
}

impl NumberType {
    /// What a softphone may dial when a flow names no types: ordinary-rate numbers.
    pub const ORDINARY_RATE: [NumberType; 4] = [
        NumberType::FixedLine,
        NumberType::Mobile,
        NumberType::FixedLineOrMobile,
        NumberType::TollFree,
    ];

    fn of(kind: phonenumber::Type) -> Self {
        use phonenumber::Type;
        match kind {
            Type::FixedLine => Self::FixedLine,
            Type::Mobile => Self::Mobile,
            Type::FixedLineOrMobile => Self::FixedLineOrMobile,
            Type::TollFree => Self::TollFree,
            Type::PremiumRate => Self::PremiumRate,
            Type::SharedCost => Self::SharedCost,
            Type::PersonalNumber => Self::PersonalNumber,
            Type::Voip => Self::Voip,
            Type::Pager => Self::Pager,
            Type::Uan => Self::Uan,
            Type::Voicemail => Self::Voicemail,
            _ => Self::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::FixedLine => "fixed_line",
            Self::Mobile => "mobile",
            Self::FixedLineOrMobile => "fixed_line_or_mobile",
            Self::TollFree => "toll_free",
            Self::PremiumRate => "premium_rate",
            Self::SharedCost => "shared_cost",
            Self::PersonalNumber => "personal_number",
            Self::Voip => "voip",
            Self::Pager => "pager",
            Self::Uan => "uan",
            Self::Voicemail => "voicemail",
            Self::Other => "other",
        }
    }
}

/// A number the guard placed: its country (ISO 3166 region, `US`) and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub country: String,
    pub number_type: NumberType,
}

/// Why a number is not called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0:?} is not a phone number")]
    NotANumber(String),
    #[error("{0:?} is not a valid number in any country's numbering plan")]
    Invalid(String),
    #[error("{number} is in {country}, which is not an allowed country")]
    Country { number: String, country: String },
    #[error("{number} is a {kind} number in {country}, which softphones may not call")]
    Type {
        number: String,
        country: String,
        kind: &'static str,
    },
}

/// Places an E.164 number.
pub fn classify(number: &str) -> Result<Destination, Refusal> {
    let parsed =
        phonenumber::parse(None, number).map_err(|_| Refusal::NotANumber(number.to_owned()))?;
    if !phonenumber::is_valid(&parsed) {
        return Err(Refusal::Invalid(number.to_owned()));
    }
    let country = parsed
        .country()
        .id()
        .map(|id| id.as_ref().to_owned())
        .ok_or_else(|| Refusal::Invalid(number.to_owned()))?;
    Ok(Destination {
        country,
        number_type: NumberType::of(parsed.number_type(&phonenumber::metadata::DATABASE)),
    })
}

/// The countries and number types a flow allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed<'a> {
    pub countries: &'a [String],
    /// Empty: [`NumberType::ORDINARY_RATE`].
    pub types: &'a [NumberType],
}

impl Allowed<'_> {
    /// The number's place when it may be called, else why not.
    pub fn check(&self, number: &str) -> Result<Destination, Refusal> {
        let destination = classify(number)?;
        if !self
            .countries
            .iter()
            .any(|c| c.eq_ignore_ascii_case(&destination.country))
        {
            return Err(Refusal::Country {
                number: number.to_owned(),
                country: destination.country,
            });
        }
        let types = if self.types.is_empty() {
            &NumberType::ORDINARY_RATE[..]
        } else {
            self.types
        };
        if !types.contains(&destination.number_type) {
            return Err(Refusal::Type {
                number: number.to_owned(),
                country: destination.country,
                kind: destination.number_type.name(),
            });
        }
        Ok(destination)
    }
}

/// Whether `region` is a region libphonenumber knows (`US`, `GB`), for checking flows.
pub fn is_known_country(region: &str) -> bool {
    region.len() == 2
        && phonenumber::metadata::DATABASE
            .by_id(&region.to_ascii_uppercase())
            .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us_and_canada() -> Vec<String> {
        vec!["US".into(), "CA".into()]
    }

    #[test]
    fn the_prefix_plus_one_is_not_one_country() {
        let countries = us_and_canada();
        let allowed = Allowed {
            countries: &countries,
            types: &[],
        };
        // San Francisco and Ottawa, ordinary numbers.
        assert_eq!(allowed.check("+14155550100").unwrap().country, "US");
        assert_eq!(allowed.check("+16135550123").unwrap().country, "CA");
        assert_eq!(
            allowed.check("+18005551234").unwrap().number_type,
            NumberType::TollFree
        );
        // Jamaica and the Dominican Republic share +1 and are billed internationally.
        assert_eq!(
            allowed.check("+18765551234"),
            Err(Refusal::Country {
                number: "+18765551234".into(),
                country: "JM".into()
            })
        );
        assert!(matches!(
            allowed.check("+18095551234"),
            Err(Refusal::Country { country, .. }) if country == "DO"
        ));
        // A US 900 number is premium rate.
        let refusal = allowed.check("+19005551234").unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "+19005551234 is a premium_rate number in US, which softphones may not call"
        );
    }

    #[test]
    fn premium_rate_elsewhere_and_invalid_numbers_are_refused() {
        let countries = vec!["GB".to_owned()];
        let allowed = Allowed {
            countries: &countries,
            types: &[],
        };
        assert!(matches!(
            allowed.check("+449061234567"),
            Err(Refusal::Type {
                kind: "premium_rate",
                ..
            })
        ));
        assert!(matches!(
            allowed.check("+1415"),
            Err(Refusal::Invalid(_) | Refusal::NotANumber(_))
        ));
        assert!(matches!(
            allowed.check("hello"),
            Err(Refusal::NotANumber(_))
        ));
    }

    #[test]
    fn a_flow_may_name_other_types() {
        let countries = us_and_canada();
        let premium = [NumberType::PremiumRate];
        let allowed = Allowed {
            countries: &countries,
            types: &premium,
        };
        assert!(allowed.check("+19005551234").is_ok());
        assert!(allowed.check("+14155550100").is_err());
    }

    #[test]
    fn knows_countries() {
        assert!(is_known_country("US"));
        assert!(is_known_country("jm"));
        assert!(!is_known_country("XX"));
        assert!(!is_known_country("USA"));
    }
}
