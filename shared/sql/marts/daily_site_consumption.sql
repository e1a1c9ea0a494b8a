-- daily_site_consumption: site x UTC day. The refresh aligns the window to whole days.
with hours as (
    select * from energy_analytics.hourly_consumption
    where
        hour >= @window_start
        and hour < @window_end
        and site_id is not null
),

daily as (
    select
        site_id,
        date(hour) as day,
        sum(energy_kwh) as energy_kwh,
        max(max_power_w) as max_power_w,
        avg(avg_temp_c) as avg_temp_c,
        count(distinct device_id) as device_count,
        sum(reading_count) as reading_count,
        avg(coverage) as avg_coverage
    from hours
    group by site_id, date(hour)
)

select * from daily
