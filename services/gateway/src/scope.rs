//! Where a credential may sign: globs over `registry/repository`, with `*` within one
//! path component and `**` across components, as signing rules match
//! (`registry.example.com/team/*` covers `team/app`, not `team/app/web`;
//! `registry.example.com/team/**` covers both). A signer token and a webhook receiver
//! can each carry one; an image outside it is refused before anything is enqueued.

use globset::{GlobSet, GlobSetBuilder};
use signet_core::ImageRef;

/// A compiled repository scope; it keeps the globs it was made from, for messages.
#[derive(Debug, Clone)]
pub struct Scope {
    globs: Vec<String>,
    set: GlobSet,
}

impl Scope {
    /// Compiles `globs`; `None` for an empty list (no scope: every repository). The
    /// message names every bad glob.
    pub fn new(globs: &[String]) -> Result<Option<Scope>, String> {
        if globs.is_empty() {
            return Ok(None);
        }
        let mut problems = Vec::new();
        let mut set = GlobSetBuilder::new();
        for g in globs {
            if g.trim().is_empty() || (!g.contains('/') && !g.contains("**")) {
                problems.push(format!(
                    "scope glob {g:?} must match registry/repository (e.g. registry.example.com/team/**)"
                ));
                continue;
            }
            match crate::webhooks::rules::glob(g) {
                Ok(glob) => {
                    set.add(glob);
                }
                Err(e) => problems.push(format!("scope glob {g:?} is invalid: {}", e.kind())),
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let set = set.build().map_err(|e| e.to_string())?;
        Ok(Some(Scope {
            globs: globs.to_vec(),
            set,
        }))
    }

    /// Whether `image`'s `registry/repository` is inside the scope.
    pub fn allows(&self, image: &ImageRef) -> bool {
        self.set.is_match(image.repository_ref())
    }

    pub fn globs(&self) -> &[String] {
        &self.globs
    }

    /// What a refusal says: the image, and the globs it is outside of.
    pub fn refusal(&self, who: &str, image: &ImageRef) -> String {
        format!(
            "{} is outside {who}'s scope ({}); nothing was enqueued",
            image.repository_ref(),
            self.globs.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(s: &str) -> ImageRef {
        ImageRef::parse(s).expect("image")
    }

    #[test]
    fn star_stays_in_one_component_and_double_star_crosses() {
        let s = Scope::new(&["reg.example/team/*".into(), "other.example/**".into()])
            .expect("valid")
            .expect("some");
        assert!(s.allows(&image("reg.example/team/app:v1")));
        assert!(!s.allows(&image("reg.example/team/app/web:v1")));
        assert!(!s.allows(&image("reg.example/teamx/app:v1")));
        assert!(!s.allows(&image("evil.example/reg.example/team/app:v1")));
        assert!(s.allows(&image("other.example/a/b/c:v1")));
        assert!(!s.allows(&image("other.example.evil/a:v1")));
        let why = s.refusal("token \"ci\"", &image("x.example/a:v1"));
        assert!(
            why.contains("x.example/a is outside token \"ci\"'s scope"),
            "{why}"
        );
    }

    #[test]
    fn empty_is_no_scope_and_bad_globs_are_named() {
        assert!(Scope::new(&[]).expect("ok").is_none());
        let err = Scope::new(&["nohost".into(), "r.example/[".into()]).expect_err("bad");
        assert!(err.contains("\"nohost\" must match"), "{err}");
        assert!(err.contains("\"r.example/[\" is invalid"), "{err}");
    }
}
