//! Times and dates of messages: "14:05" in the list, the full date on hover and focus, and
//! day separators. Rendered in UTC on the server (it does not know the reader's zone) and in
//! the reader's zone once the page is hydrated.

/// A calendar day and a time of day, as the reader sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i64,
    /// 1–12
    pub month: u32,
    /// 1–31
    pub day: u32,
    /// 0 = Sunday
    pub weekday: u32,
    pub hour: u32,
    pub minute: u32,
}

impl LocalTime {
    /// The moment `timestamp_ms` in the reader's zone (`local`, in the browser) or in UTC.
    pub fn of(timestamp_ms: u64, local: bool) -> LocalTime {
        #[cfg(feature = "hydrate")]
        if local {
            let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(timestamp_ms as f64));
            return LocalTime {
                year: i64::from(date.get_full_year()),
                month: date.get_month() + 1,
                day: date.get_date(),
                weekday: date.get_day(),
                hour: date.get_hours(),
                minute: date.get_minutes(),
            };
        }
        let _ = local;
        utc(timestamp_ms)
    }

    pub fn same_day(&self, other: &LocalTime) -> bool {
        (self.year, self.month, self.day) == (other.year, other.month, other.day)
    }

    /// "14:05"
    pub fn clock(&self) -> String {
        format!("{:02}:{:02}", self.hour, self.minute)
    }

    /// "Monday, 30 November 2026"
    pub fn date(&self) -> String {
        format!(
            "{}, {} {} {}",
            WEEKDAYS[self.weekday as usize % 7],
            self.day,
            MONTHS[(self.month as usize + 11) % 12],
            self.year
        )
    }

    /// "2026-11-30" (for `<time datetime>`, with the clock: "2026-11-30T14:05").
    pub fn iso(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute
        )
    }
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The civil date and time in UTC (Howard Hinnant's days-to-civil algorithm).
fn utc(timestamp_ms: u64) -> LocalTime {
    let seconds = (timestamp_ms / 1000) as i64;
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    LocalTime {
        year,
        month,
        day,
        // 1970-01-01 was a Thursday.
        weekday: (days + 4).rem_euclid(7) as u32,
        hour: (of_day / 3600) as u32,
        minute: (of_day % 3600 / 60) as u32,
    }
}

/// Messages by one author this close together read as one group (name and time once).
pub const GROUP_WITHIN_MS: u64 = 5 * 60 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_and_times() {
        let t = LocalTime::of(0, false);
        assert_eq!((t.year, t.month, t.day, t.weekday), (1970, 1, 1, 4));
        // 2026-11-30 23:59 UTC, a Monday.
        let t = LocalTime::of(1_796_083_140_000, false);
        assert_eq!(t.date(), "Monday, 30 November 2026");
        assert_eq!(t.clock(), "23:59");
        assert_eq!(t.iso(), "2026-11-30T23:59");
        // 2024-02-29, a leap day.
        let t = LocalTime::of(1_709_164_800_000, false);
        assert_eq!((t.year, t.month, t.day), (2024, 2, 29));
        assert!(!t.same_day(&LocalTime::of(1_709_164_800_000 + 86_400_000, false)));
    }
}
