-- dim_device: installed devices with their site's type and time zone.
with devices as (
    select * from staging.stg_device
),

sites as (
    select * from staging.stg_site
),

live_devices as (
    select * from devices
    where not is_deleted
),

with_site as (
    select
        live_devices.device_id,
        live_devices.site_id,
        live_devices.name,
        live_devices.meter_type,
        live_devices.nominal_voltage,
        live_devices.interval_minutes,
        live_devices.installed_at,
        sites.site_type,
        sites.timezone,
        live_devices.synced_at
    from live_devices
    left join sites
        on live_devices.site_id = sites.site_id and not sites.is_deleted
)

select * from with_site
