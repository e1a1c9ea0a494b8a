-- stg_device: the only reader of raw.device. A decommissioned device arrives as a deleted row.
with source as (
    select * from raw.device
),

renamed as (
    select
        -- ids
        cast(device_id as string) as device_id,
        cast(site_id as string) as site_id,

        -- attributes
        cast(name as string) as name,
        cast(meter_type as string) as meter_type,

        -- numerics
        cast(nominal_voltage as float64) as nominal_voltage,
        cast(interval_minutes as int64) as interval_minutes,

        -- timestamps
        cast(installed_at as timestamp) as installed_at,

        -- connector
        cast(_fivetran_synced as timestamp) as synced_at,
        coalesce(_fivetran_deleted, false) as is_deleted
    from source
)

select * from renamed
