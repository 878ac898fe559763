//! Building [`BusOptions`] from signet's settings file (`bus_options`), so every service
//! that opens the bus behaves the same.

use signet_runtime::Settings;

use crate::BusOptions;

impl BusOptions {
    /// The bus options of a service: namespace, ack wait and delivery limit from the
    /// settings; the rest at their defaults.
    pub fn from_settings(settings: &Settings) -> Self {
        let o = &settings.bus_options;
        Self {
            namespace: o.namespace.clone(),
            ack_wait: o.ack_wait,
            max_deliver: o.max_deliver,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn settings_become_options() {
        let mut s = Settings::default();
        assert_eq!(BusOptions::from_settings(&s), BusOptions::default());
        s.bus_options.namespace = Some("t1".into());
        s.bus_options.ack_wait = Duration::from_secs(2);
        s.bus_options.max_deliver = 3;
        let o = BusOptions::from_settings(&s);
        assert_eq!(o.namespace.as_deref(), Some("t1"));
        assert_eq!(o.ack_wait, Duration::from_secs(2));
        assert_eq!(o.max_deliver, 3);
        assert!(o.validate().is_ok());
    }
}
