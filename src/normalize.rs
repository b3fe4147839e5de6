// TEMPORARY placeholder until the normalize module lands (replaced in this session).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNormalizeConfig {}
#[derive(Debug, Clone, Default)]
pub struct NormalizeConfig {}
impl RawNormalizeConfig {
    pub fn validate(self) -> Result<NormalizeConfig, String> {
        Ok(NormalizeConfig {})
    }
}
