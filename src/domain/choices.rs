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

/// The schema of a `choices` object: purpose key → `true` (grant) or `false` (refusal),
/// 1 to [`MAX_CHOICES`] entries.
pub struct ChoicesSchema;

impl utoipa::PartialSchema for ChoicesSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(super::purpose::KEY_PATTERN))
                    .min_length(Some(1))
                    .max_length(Some(64)),
            ))
            .additional_properties(Some(AdditionalProperties::RefOr(
                ObjectBuilder::new().schema_type(Type::Boolean).into(),
            )))
            .min_properties(Some(1))
            .max_properties(Some(MAX_CHOICES))
            .description(Some("Purpose key → granted (true) or refused (false)."))
            .examples([serde_json::json!({"statistics": true, "social_media": false})])
            .into()
    }
}
impl utoipa::ToSchema for ChoicesSchema {}

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
            return Err(FieldError::new("choices", "name at least one purpose, e.g. {\"analytics\": true}"));
        }
        if raw.len() > MAX_CHOICES {
            return Err(FieldError::new("choices", format!("at most {MAX_CHOICES} purposes per submission")));
        }
        let mut out = Vec::with_capacity(raw.len());
        for (name, granted) in raw {
            let field = || format!("choices.{}", super::purpose::shown(name));
            let key = PurposeKey::parse(name).map_err(|m| FieldError::new(field(), m))?;
            match model_of(&key) {
                None => return Err(FieldError::new(field(), format!("no purpose '{key}' is defined for this tenant"))),
                Some(ConsentModel::NoticeOnly) if !granted => {
                    return Err(FieldError::new(
                        field(),
                        format!("'{key}' is strictly necessary (notice_only) and cannot be refused"),
                    ))
                }
                Some(ConsentModel::NoticeOnly) => {}
                Some(_) => out.push((key, Decision::from_bool(*granted))),
            }
        }
        Ok(Self(out))
    }

    /// No choices (a request that only carries a GPC signal).
    pub fn none() -> Self {
        Self(Vec::new())
    }

    pub fn iter(&self) -> impl Iterator<Item = &(PurposeKey, Decision)> {
        self.0.iter()
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
        assert_eq!(
            err.to_string(),
            "choices.necessary: 'necessary' is strictly necessary (notice_only) and cannot be refused"
        );
        let ok = Choices::parse(&raw(&[("necessary", true), ("analytics", false)]), models).unwrap();
        assert_eq!(ok.iter().collect::<Vec<_>>(), vec![&(PurposeKey::parse("analytics").unwrap(), Decision::Denied)]);
    }

    #[test]
    fn unknown_and_malformed_purposes_name_the_field() {
        let err = Choices::parse(&raw(&[("newsletter", true)]), models).unwrap_err();
        assert_eq!(err.to_string(), "choices.newsletter: no purpose 'newsletter' is defined for this tenant");
        let err = Choices::parse(&raw(&[("Bad-Key", true)]), models).unwrap_err();
        assert!(err.to_string().starts_with("choices.Bad-Key: 'Bad-Key' is not a purpose key"));
        assert!(Choices::parse(&raw(&[]), models).unwrap_err().to_string().starts_with("choices: "));
    }
}
