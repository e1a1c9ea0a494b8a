-- hourly_consumption: device x UTC hour. Every interval (previous reading, reading] of at most 24 h
-- spreads its energy over the hours it covers, pro rata by time; coverage is the share of the hour
-- covered by intervals of known energy. Power, temperature and occupancy samples belong to the hour
-- their interval ends in (fct_reading.hour), so every column of a row describes the same hour.
with readings as (
    -- an interval ending up to 24 h after the window's end can still cover hours in it
    select * from energy_analytics.fct_reading
    where
        reading_at > @window_start
        and reading_at < timestamp_add(@window_end, interval 24 hour)
        and previous_reading_at is not null
),

devices as (
    select * from energy_analytics.dim_device
),

-- most intervals (regular meters) lie inside one hour; only the others need an hour series
single_hour as (
    select
        device_id,
        hour,
        interval_s as overlap_s,
        interval_s,
        energy_wh
    from readings
    where timestamp_trunc(previous_reading_at, hour) = hour
),

spanning as (
    select * from readings
    where timestamp_trunc(previous_reading_at, hour) != hour
),

spanning_hours as (
    select
        spanning.device_id,
        covered_hour as hour,
        timestamp_diff(
            least(spanning.reading_at, timestamp_add(covered_hour, interval 1 hour)),
            greatest(spanning.previous_reading_at, covered_hour),
            second
        ) as overlap_s,
        spanning.interval_s,
        spanning.energy_wh
    from spanning
    cross join unnest(
        generate_timestamp_array(
            timestamp_trunc(spanning.previous_reading_at, hour), spanning.hour, interval 1 hour
        )
    ) as covered_hour
),

interval_parts as (
    select * from single_hour
    union all
    select * from spanning_hours
),

energy_by_hour as (
    select
        device_id,
        hour,
        sum(energy_wh * overlap_s / interval_s) / 1000 as energy_kwh,
        coalesce(sum(case when energy_wh is not null then overlap_s end), 0) / 3600 as coverage
    from interval_parts
    where hour >= @window_start and hour < @window_end
    group by device_id, hour
),

samples_by_hour as (
    select
        device_id,
        hour,
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

hourly as (
    select
        energy_by_hour.device_id,
        devices.site_id,
        energy_by_hour.hour,
        samples_by_hour.avg_power_w,
        samples_by_hour.max_power_w,
        energy_by_hour.energy_kwh,
        samples_by_hour.avg_temp_c,
        samples_by_hour.max_temp_c,
        samples_by_hour.occupancy_share,
        coalesce(samples_by_hour.reading_count, 0) as reading_count,
        energy_by_hour.coverage
    from energy_by_hour
    inner join devices
        on energy_by_hour.device_id = devices.device_id
    left join samples_by_hour
        on
            energy_by_hour.device_id = samples_by_hour.device_id
            and energy_by_hour.hour = samples_by_hour.hour
)

select * from hourly
