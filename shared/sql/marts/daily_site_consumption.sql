-- daily_site_consumption: site x local day, in the site's IANA time zone (DST-correct: a spring
-- day has 23 hours, an autumn day 25). Hours are UTC everywhere else; the local day is derived
-- here. The refresh aligns the window to whole UTC days and widens it by a day each side; a local
-- day lies within 14 h of its UTC date, so reading a day either side covers every hour of the days
-- written.
with hours as (
    select * from energy_analytics.hourly_consumption
    where
        hour >= timestamp_sub(@window_start, interval 24 hour)
        and hour < timestamp_add(@window_end, interval 24 hour)
        and site_id is not null
),

sites as (
    select * from energy_analytics.dim_site
),

with_zone as (
    select
        hours.*,
        coalesce(sites.timezone, 'UTC') as timezone
    from hours
    left join sites
        on hours.site_id = sites.site_id
),

-- the zone conversion once per zone and hour, not per device-hour
zone_hours as (
    select distinct timezone, hour from with_zone
),

local_days as (
    select
        timezone,
        hour,
        date(hour, timezone) as day
    from zone_hours
),

with_day as (
    select
        with_zone.*,
        local_days.day
    from with_zone
    inner join local_days
        on with_zone.timezone = local_days.timezone and with_zone.hour = local_days.hour
),

daily as (
    select
        site_id,
        day,
        sum(energy_kwh) as energy_kwh,
        max(max_power_w) as max_power_w,
        avg(avg_temp_c) as avg_temp_c,
        count(distinct device_id) as device_count,
        sum(reading_count) as reading_count,
        avg(coverage) as avg_coverage
    from with_day
    where day >= date(@window_start) and day < date(@window_end)
    group by site_id, day
)

select * from daily
