//! UTC dates for output and input, without a time zone database: Unix seconds to and from
//! the civil calendar (Howard Hinnant's algorithms, exact for every year of the proleptic
//! Gregorian calendar).

/// A UTC date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub y: i64,
    pub m: i64,
    pub d: i64,
    pub hh: i64,
    pub mm: i64,
    pub ss: i64,
}

impl Civil {
    /// The date and time of Unix second `secs`.
    pub(crate) fn at(secs: i64) -> Civil {
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        Civil {
            y: yoe + era * 400 + i64::from(m <= 2),
            m,
            d,
            hh: rem / 3600,
            mm: rem % 3600 / 60,
            ss: rem % 60,
        }
    }

    /// The Unix second of this date and time (fields not checked).
    pub(crate) fn secs(&self) -> i64 {
        let y = if self.m <= 2 { self.y - 1 } else { self.y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (self.m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + self.d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400 + self.hh * 3600 + self.mm * 60 + self.ss
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC).
pub(crate) fn utc(secs: i64) -> String {
    let c = Civil::at(secs);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        c.y, c.m, c.d, c.hh, c.mm, c.ss
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_796_603_462), "2026-12-07 00:31:02");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
        for s in [
            0,
            1,
            59,
            86_399,
            951_782_400,
            1_796_603_462,
            4_102_444_800,
            -86_401,
        ] {
            assert_eq!(Civil::at(s).secs(), s, "{s}");
        }
    }
}
