-- stg_site: the only reader of raw.site. Renames and casts; keeps the connector's delete flag.
with source as (
    select * from raw.site
),

renamed as (
    select
        -- ids
        cast(site_id as string) as site_id,

        -- attributes
        cast(name as string) as name,
        cast(site_type as string) as site_type,
        cast(timezone as string) as timezone,

        -- numerics
        cast(latitude as float64) as latitude,
        cast(longitude as float64) as longitude,

        -- connector
        cast(_fivetran_synced as timestamp) as synced_at,
        coalesce(_fivetran_deleted, false) as is_deleted
    from source
)

select * from renamed
