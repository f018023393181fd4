//! A submission of choices: `{"analytics": true, "marketing_email": false}`.

use super::purpose::{ConsentModel, PurposeKey};
use super::status::Decision;
use super::FieldError;
use std::collections::BTreeMap;

/// Validated choices, one decision per purpose, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices(Vec<(PurposeKey, Decision)>);

/// The most purposes one submission may name.
pub const MAX_CHOICES: usize = 200;

impl Choices {
    /// Checks raw choices against the tenant's purposes.
    ///
    /// `model_of` gives the effective consent model of a defined purpose, `None` for an
    /// unknown one. Errors (field `choices.<key>`): empty map, bad key, unknown purpose, or a
    /// refusal of a `notice_only` purpose (strictly necessary, it cannot be refused). Acceptances
    /// of `notice_only` purposes are dropped: there is nothing to record.
    pub fn parse(
        raw: &BTreeMap<String, bool>,
        model_of: impl Fn(&PurposeKey) -> Option<ConsentModel>,
    ) -> Result<Self, FieldError> {
        if raw.is_empty() {
            return Err(FieldError::new(
                "choices",
                "name at least one purpose, e.g. {\"analytics\": true}",
            ));
        }
        if raw.len() > MAX_CHOICES {
            return Err(FieldError::new(
                "choices",
                format!("at most {MAX_CHOICES} purposes per submission"),
            ));
        }
        let mut out = Vec::with_capacity(raw.len());
        for (name, granted) in raw {
            let field = || format!("choices.{}", super::purpose::truncate(name));
            let key = PurposeKey::parse(name).map_err(|m| FieldError::new(field(), m))?;
            match model_of(&key) {
                None => {
                    return Err(FieldError::new(
                        field(),
                        format!("no purpose '{key}' is defined for this tenant"),
                    ))
                }
                Some(ConsentModel::NoticeOnly) if !granted => {
                    return Err(FieldError::new(
                        field(),
                        format!(
                            "'{key}' is strictly necessary (notice_only) and cannot be refused"
                        ),
                    ))
                }
                Some(ConsentModel::NoticeOnly) => {}
                Some(_) => out.push((key, Decision::from_bool(*granted))),
            }
        }
        Ok(Self(out))
    }

    pub fn iter(&self) -> impl Iterator<Item = &(PurposeKey, Decision)> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(key: &PurposeKey) -> Option<ConsentModel> {
        match key.as_str() {
            "necessary" => Some(ConsentModel::NoticeOnly),
            "analytics" => Some(ConsentModel::OptIn),
            "sale_sharing" => Some(ConsentModel::OptOut),
            _ => None,
        }
    }

    fn raw(pairs: &[(&str, bool)]) -> BTreeMap<String, bool> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn notice_only_purposes_cannot_be_refused() {
        let err = Choices::parse(&raw(&[("necessary", false)]), models).unwrap_err();
        assert_eq!(err.to_string(), "choices.necessary: 'necessary' is strictly necessary (notice_only) and cannot be refused");
        let ok =
            Choices::parse(&raw(&[("necessary", true), ("analytics", false)]), models).unwrap();
        assert_eq!(
            ok.iter().collect::<Vec<_>>(),
            vec![&(PurposeKey::parse("analytics").unwrap(), Decision::Denied)]
        );
    }

    #[test]
    fn unknown_and_malformed_purposes_name_the_field() {
        let err = Choices::parse(&raw(&[("newsletter", true)]), models).unwrap_err();
        assert_eq!(
            err.to_string(),
            "choices.newsletter: no purpose 'newsletter' is defined for this tenant"
        );
        let err = Choices::parse(&raw(&[("Bad-Key", true)]), models).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("choices.Bad-Key: 'Bad-Key' is not a purpose key"));
        assert!(Choices::parse(&raw(&[]), models)
            .unwrap_err()
            .to_string()
            .starts_with("choices: "));
    }
}
