-- hourly_consumption: device x UTC hour. Every interval (previous reading, reading] of at most 24 h
-- spreads its energy over the hours it covers, pro rata by time; coverage is the share of the hour
-- covered by intervals of known energy. Power, temperature and occupancy samples belong to the hour
-- their interval ends in (fct_reading.hour), so every column of a row describes the same hour.
with readings as (
    -- an interval ending up to 24 h after the window's end can still cover hours in it
    select
        device_id,
        reading_at,
        hour,
        previous_reading_at,
        interval_s,
        energy_wh,
        power_w,
        temp_c,
        occupancy
    from energy_analytics.fct_reading
    where
        reading_at > @window_start
        and reading_at < timestamp_add(@window_end, interval 24 hour)
        and previous_reading_at is not null
),

devices as (
    select * from energy_analytics.dim_device
),

-- each interval's part in the hour it ends in (all of it, for a regular meter), with the samples
end_hour as (
    select
        device_id,
        hour,
        sum(energy_wh * timestamp_diff(reading_at, greatest(previous_reading_at, hour), second) / interval_s)
            as energy_wh,
        sum(
            case
                when energy_wh is not null
                    then timestamp_diff(reading_at, greatest(previous_reading_at, hour), second)
            end
        ) as known_s,
        avg(power_w) as avg_power_w,
        max(power_w) as max_power_w,
        avg(temp_c) as avg_temp_c,
        max(temp_c) as max_temp_c,
        avg(case when occupancy then 1.0 when not occupancy then 0.0 end) as occupancy_share,
        count(*) as reading_count
    from readings
    where hour >= @window_start and hour < @window_end
    group by device_id, hour
),

-- the few intervals that start in an earlier hour: their parts in the hours before the last
spanning as (
    select * from readings
    where timestamp_trunc(previous_reading_at, hour) < hour
),

earlier_parts as (
    select
        spanning.device_id,
        covered_hour as hour,
        timestamp_diff(
            timestamp_add(covered_hour, interval 1 hour),
            greatest(spanning.previous_reading_at, covered_hour),
            second
        ) as overlap_s,
        spanning.interval_s,
        spanning.energy_wh
    from spanning
    cross join unnest(
        generate_timestamp_array(
            timestamp_trunc(spanning.previous_reading_at, hour),
            timestamp_sub(spanning.hour, interval 1 hour),
            interval 1 hour
        )
    ) as covered_hour
),

earlier_hours as (
    select
        device_id,
        hour,
        sum(energy_wh * overlap_s / interval_s) as energy_wh,
        sum(case when energy_wh is not null then overlap_s end) as known_s,
        cast(null as float64) as avg_power_w,
        cast(null as float64) as max_power_w,
        cast(null as float64) as avg_temp_c,
        cast(null as float64) as max_temp_c,
        cast(null as float64) as occupancy_share,
        0 as reading_count
    from earlier_parts
    where hour >= @window_start and hour < @window_end
    group by device_id, hour
),

-- an hour may have both: a longer interval's early part and intervals ending in it
combined as (
    select
        device_id,
        hour,
        sum(energy_wh) / 1000 as energy_kwh,
        coalesce(sum(known_s), 0) / 3600 as coverage,
        max(avg_power_w) as avg_power_w,
        max(max_power_w) as max_power_w,
        max(avg_temp_c) as avg_temp_c,
        max(max_temp_c) as max_temp_c,
        max(occupancy_share) as occupancy_share,
        sum(reading_count) as reading_count
    from (
        select * from end_hour
        union all
        select * from earlier_hours
    )
    group by device_id, hour
),

hourly as (
    select
        combined.device_id,
        devices.site_id,
        combined.hour,
        combined.avg_power_w,
        combined.max_power_w,
        combined.energy_kwh,
        combined.avg_temp_c,
        combined.max_temp_c,
        combined.occupancy_share,
        combined.reading_count,
        combined.coverage
    from combined
    inner join devices
        on combined.device_id = devices.device_id
)

select * from hourly
